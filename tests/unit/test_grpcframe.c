/* test_grpcframe.c - gRPC message framing (store/core/grpcframe.c): a
 * message whole in one chunk (read in place), split anywhere (reassembled),
 * several per chunk, empty ones, the size limit and the compressed flag;
 * grpc-timeout values; grpc-message's percent-encoding. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/grpcframe.h"
#include "unit.h"

/* The framed form of msg (prefix + bytes) at out; returns its length. */
static size_t frame(uint8_t *out, const char *msg)
{
	size_t n = strlen(msg);
	grpcframe_prefix(out, (uint32_t)n);
	memcpy(out + GRPCFRAME_PREFIX, msg, n);
	return GRPCFRAME_PREFIX + n;
}

TEST(prefix_layout)
{
	uint8_t p[GRPCFRAME_PREFIX];
	grpcframe_prefix(p, 0x01020304);
	CHECK_INT(p[0], 0);
	CHECK_INT(p[1], 1);
	CHECK_INT(p[2], 2);
	CHECK_INT(p[3], 3);
	CHECK_INT(p[4], 4);
}

TEST(whole_message_read_in_place)
{
	struct grpcframe_rd r;
	uint8_t buf[64];
	size_t n = frame(buf, "hello"), used, len;
	const uint8_t *msg;

	grpcframe_rd_init(&r, 100);
	CHECK_INT(grpcframe_rd_feed(&r, buf, n, &used, &msg, &len, NULL), GRPCFRAME_MSG);
	CHECK_INT(used, n);
	CHECK_INT(len, 5);
	CHECK(msg == buf + GRPCFRAME_PREFIX); /* no copy */
	CHECK(!grpcframe_rd_partial(&r));
	CHECK_INT(grpcframe_rd_feed(&r, buf + n, 0, &used, &msg, &len, NULL), GRPCFRAME_MORE);
	CHECK_INT(used, 0);
	grpcframe_rd_fini(&r);
}

TEST(several_and_empty_messages_in_one_chunk)
{
	struct grpcframe_rd r;
	uint8_t buf[64];
	size_t n = 0, used, len, off = 0;
	const uint8_t *msg;

	n += frame(buf + n, "ab");
	n += frame(buf + n, "");
	n += frame(buf + n, "cde");
	grpcframe_rd_init(&r, 100);
	CHECK_INT(grpcframe_rd_feed(&r, buf, n, &used, &msg, &len, NULL), GRPCFRAME_MSG);
	CHECK(len == 2 && memcmp(msg, "ab", 2) == 0);
	off += used;
	CHECK_INT(grpcframe_rd_feed(&r, buf + off, n - off, &used, &msg, &len, NULL), GRPCFRAME_MSG);
	CHECK_INT(len, 0);
	off += used;
	CHECK_INT(grpcframe_rd_feed(&r, buf + off, n - off, &used, &msg, &len, NULL), GRPCFRAME_MSG);
	CHECK(len == 3 && memcmp(msg, "cde", 3) == 0);
	off += used;
	CHECK_INT(off, n);
	grpcframe_rd_fini(&r);
}

TEST(byte_by_byte)
{
	struct grpcframe_rd r;
	uint8_t buf[64];
	size_t n = frame(buf, "split me"), used, len;
	const uint8_t *msg;
	int got = 0;

	grpcframe_rd_init(&r, 100);
	for (size_t i = 0; i < n; i++) {
		int rc = grpcframe_rd_feed(&r, buf + i, 1, &used, &msg, &len, NULL);
		CHECK_INT(used, 1);
		if (i + 1 < n) {
			CHECK_INT(rc, GRPCFRAME_MORE);
			CHECK(grpcframe_rd_partial(&r));
		} else {
			REQUIRE(rc == GRPCFRAME_MSG);
			CHECK(len == 8 && memcmp(msg, "split me", 8) == 0);
			got = 1;
		}
	}
	CHECK(got);
	CHECK(!grpcframe_rd_partial(&r));
	grpcframe_rd_fini(&r);
}

TEST(too_big_and_compressed)
{
	struct grpcframe_rd r;
	uint8_t buf[64];
	size_t n = frame(buf, "0123456789"), used, len, seen = 0;
	const uint8_t *msg;

	grpcframe_rd_init(&r, 9);
	CHECK_INT(grpcframe_rd_feed(&r, buf, n, &used, &msg, &len, &seen), GRPCFRAME_ETOOBIG);
	CHECK_INT(seen, 10);
	grpcframe_rd_fini(&r);

	grpcframe_rd_init(&r, 10); /* exactly the limit is fine */
	CHECK_INT(grpcframe_rd_feed(&r, buf, n, &used, &msg, &len, NULL), GRPCFRAME_MSG);
	grpcframe_rd_fini(&r);

	buf[0] = 1;
	grpcframe_rd_init(&r, 100);
	CHECK_INT(grpcframe_rd_feed(&r, buf, n, &used, &msg, &len, NULL), GRPCFRAME_ECOMPRESSED);
	grpcframe_rd_fini(&r);
}

/* Random messages cut at random points come out whole and in order. */
TEST(random_splits)
{
	srand(7);
	for (int round = 0; round < 200; round++) {
		struct grpcframe_rd r;
		uint8_t *stream = malloc(64 * 1024);
		size_t lens[20], nmsg = 1 + (size_t)rand() % 20, n = 0, off = 0, k = 0;
		REQUIRE(stream != NULL);
		for (size_t i = 0; i < nmsg; i++) {
			lens[i] = (size_t)rand() % 3000;
			grpcframe_prefix(stream + n, (uint32_t)lens[i]);
			n += GRPCFRAME_PREFIX;
			for (size_t j = 0; j < lens[i]; j++)
				stream[n + j] = (uint8_t)(i * 31 + j);
			n += lens[i];
		}
		grpcframe_rd_init(&r, 4096);
		while (off < n) {
			size_t chunk = 1 + (size_t)rand() % 4000, end;
			end = off + chunk > n ? n : off + chunk;
			while (off < end) {
				const uint8_t *msg;
				size_t used, len;
				int rc = grpcframe_rd_feed(&r, stream + off, end - off, &used, &msg, &len, NULL);
				REQUIRE(rc >= 0);
				off += used;
				if (rc == GRPCFRAME_MSG) {
					REQUIRE(k < nmsg);
					CHECK_INT(len, lens[k]);
					for (size_t j = 0; j < len; j++)
						if (msg[j] != (uint8_t)(k * 31 + j)) {
							unit_fail(__FILE__, __LINE__, "message %zu byte %zu", k, j);
							break;
						}
					k++;
				} else {
					CHECK_INT(off, end);
				}
			}
		}
		CHECK_INT(k, nmsg);
		CHECK(!grpcframe_rd_partial(&r));
		grpcframe_rd_fini(&r);
		free(stream);
	}
}

static int timeout_of(const char *v, uint64_t *ns)
{
	return grpcframe_timeout_parse(v, strlen(v), ns);
}

TEST(timeouts)
{
	uint64_t ns = 0;
	CHECK_INT(timeout_of("100m", &ns), 0);
	CHECK_INT(ns, 100000000);
	CHECK_INT(timeout_of("5S", &ns), 0);
	CHECK_INT(ns, 5000000000ll);
	CHECK_INT(timeout_of("2M", &ns), 0);
	CHECK_INT(ns, 120000000000ll);
	CHECK_INT(timeout_of("1H", &ns), 0);
	CHECK_INT(ns, 3600000000000ll);
	CHECK_INT(timeout_of("7u", &ns), 0);
	CHECK_INT(ns, 7000);
	CHECK_INT(timeout_of("99999999n", &ns), 0);
	CHECK_INT(ns, 99999999);
	CHECK_INT(timeout_of("", &ns), -EINVAL);
	CHECK_INT(timeout_of("m", &ns), -EINVAL);
	CHECK_INT(timeout_of("123456789S", &ns), -EINVAL); /* at most 8 digits */
	CHECK_INT(timeout_of("10x", &ns), -EINVAL);
	CHECK_INT(timeout_of("1 S", &ns), -EINVAL);
	CHECK_INT(timeout_of("-1S", &ns), -EINVAL);
}

TEST(message_encoding)
{
	char out[32];
	CHECK_INT(grpcframe_pct_encode("etcdserver: key is not provided", out, sizeof(out)), 31);
	CHECK(strcmp(out, "etcdserver: key is not provided") == 0);
	grpcframe_pct_encode("a%b\n\xc3\xa9", out, sizeof(out));
	CHECK(strcmp(out, "a%25b%0A%C3%A9") == 0);
	/* cut at a whole character: never half of %XX */
	CHECK_INT(grpcframe_pct_encode("ab%", out, 5), 2);
	CHECK(strcmp(out, "ab") == 0);
	CHECK_INT(grpcframe_pct_encode("abc", out, 1), 0);
	CHECK(strcmp(out, "") == 0);
}

UNIT_MAIN(TEST_ENTRY(prefix_layout), TEST_ENTRY(whole_message_read_in_place),
          TEST_ENTRY(several_and_empty_messages_in_one_chunk), TEST_ENTRY(byte_by_byte),
          TEST_ENTRY(too_big_and_compressed), TEST_ENTRY(random_splits), TEST_ENTRY(timeouts),
          TEST_ENTRY(message_encoding))
