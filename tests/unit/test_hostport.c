/* test_hostport.c - core/hostport.c: host:port and [v6]:port split, and
 * the comma-separated lists of etcd's URL flags. */
#include <string.h>

#include "core/hostport.h"
#include "unit.h"

TEST(split)
{
	char host[64], port[16];

	CHECK_INT(hostport_split("127.0.0.1:2379", 14, host, sizeof(host), port, sizeof(port)), 0);
	CHECK(strcmp(host, "127.0.0.1") == 0 && strcmp(port, "2379") == 0);
	CHECK_INT(hostport_split("[::1]:80", 8, host, sizeof(host), port, sizeof(port)), 0);
	CHECK(strcmp(host, "::1") == 0 && strcmp(port, "80") == 0);
	CHECK(hostport_split("::1:80", 6, host, sizeof(host), port, sizeof(port)) != 0);
	CHECK(hostport_split("h:8x", 4, host, sizeof(host), port, sizeof(port)) != 0);
	CHECK(hostport_split("h", 1, host, sizeof(host), port, sizeof(port)) != 0);
}

/* The list's items joined with '|'. */
static void items(const char *list, char *out, size_t outlen)
{
	const char *pos = list, *it;
	size_t len, used = 0;

	out[0] = '\0';
	while (hostport_list_next(&pos, &it, &len) && used + len + 2 < outlen) {
		memcpy(out + used, it, len);
		used += len;
		out[used++] = '|';
		out[used] = '\0';
	}
}

TEST(list_next)
{
	char buf[128];

	items("http://a:1, http://[::1]:2 ,\tunix://x", buf, sizeof(buf));
	CHECK(strcmp(buf, "http://a:1|http://[::1]:2|unix://x|") == 0);
	items("a,,b,", buf, sizeof(buf)); /* empty items are given, as empty */
	CHECK(strcmp(buf, "a||b|") == 0);
	items("", buf, sizeof(buf));
	CHECK(strcmp(buf, "") == 0);
	items(" ", buf, sizeof(buf));
	CHECK(strcmp(buf, "|") == 0);
}

UNIT_MAIN(TEST_ENTRY(split), TEST_ENTRY(list_next))
