/* test_peer_port.c - store/node/peer_port.c, its pure part: what a peer-port
 * connection carries from its first bytes, fed one byte at a time (a hello cut in
 * parts), raft's handshake round trip, bad input, and raft addresses. */
#include <stdlib.h>
#include <string.h>

#include "node/peer_port.h"
#include "unit.h"

static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/* The class of p[0..len), and that every shorter prefix asks for more. */
static enum peer_hello classify(const uint8_t *p, size_t len, uint64_t *id, char *addr,
                                size_t *used)
{
	char why[96];
	for (size_t i = 0; i < len; i++) {
		enum peer_hello k = peer_hello_parse(p, i, id, addr, used, why, sizeof(why));
		if (k != PEER_HELLO_MORE)
			return k;
	}
	return peer_hello_parse(p, len, id, addr, used, why, sizeof(why));
}

TEST(raft_round_trip)
{
	uint8_t buf[PEER_HELLO_MAX + 8];
	char addr[PEER_HELLO_MAX_ADDRESS + 1];
	uint64_t id = 0;
	size_t used = 0, len = peer_hello_encode(buf, 0x8e9e05c52164694dull, "127.0.0.1:2380");

	CHECK_INT(len, 24 + 16); /* "127.0.0.1:2380\0" padded to 8 */
	memcpy(buf + len, "raftdata", 8); /* what follows is not the hello's */
	CHECK_INT(classify(buf, len + 8, &id, addr, &used), PEER_HELLO_RAFT);
	CHECK_INT(used, len);
	CHECK(id == 0x8e9e05c52164694dull);
	CHECK(strcmp(addr, "127.0.0.1:2380") == 0);
}

TEST(grpc_preface)
{
	uint8_t buf[64];
	uint64_t id;
	size_t used;
	char addr[PEER_HELLO_MAX_ADDRESS + 1];

	memcpy(buf, preface, 24);
	memset(buf + 24, 0, 9); /* a SETTINGS frame header */
	CHECK_INT(classify(buf, 33, &id, addr, &used), PEER_HELLO_GRPC);
	buf[20] = 'X';
	CHECK_INT(classify(buf, 33, &id, addr, &used), PEER_HELLO_BAD);
}

TEST(bad)
{
	uint8_t buf[PEER_HELLO_MAX];
	char addr[PEER_HELLO_MAX_ADDRESS + 1], why[96];
	uint64_t id;
	size_t used;

	memcpy(buf, "GET / HTTP/1.1\r\n\r\n", 18); /* an HTTP/1 client */
	CHECK_INT(peer_hello_parse(buf, 18, &id, addr, &used, why, sizeof(why)), PEER_HELLO_BAD);
	CHECK(strstr(why, "unknown protocol") != NULL);
	peer_hello_encode(buf, 1, "1.2.3.4:5");
	buf[16] = 0; /* address length 0 */
	CHECK_INT(peer_hello_parse(buf, 32, &id, addr, &used, why, sizeof(why)), PEER_HELLO_BAD);
	buf[16] = 0x01;
	buf[17] = 0x10; /* 4097 bytes: too long */
	CHECK_INT(peer_hello_parse(buf, 32, &id, addr, &used, why, sizeof(why)), PEER_HELLO_BAD);
	char *big = malloc(PEER_HELLO_MAX_ADDRESS + 1);
	memset(big, 'a', PEER_HELLO_MAX_ADDRESS);
	big[PEER_HELLO_MAX_ADDRESS] = '\0';
	CHECK_INT(peer_hello_encode(buf, 1, big), 0);
	free(big);
}

TEST(addresses)
{
	struct sockaddr_in sa;
	char ip[64];

	CHECK_INT(peer_address_parse("127.0.0.1:2380", &sa, ip, sizeof(ip)), 0);
	CHECK(strcmp(ip, "127.0.0.1") == 0);
	CHECK_INT(ntohs(sa.sin_port), 2380);
	CHECK_INT(peer_address_parse("0.0.0.0:1", &sa, ip, sizeof(ip)), 0);
	CHECK_INT(peer_address_parse("localhost:2380", &sa, ip, sizeof(ip)), -1);
	CHECK_INT(peer_address_parse("127.0.0.1:70000", &sa, ip, sizeof(ip)), -1);
	CHECK_INT(peer_address_parse("127.0.0.1:", &sa, ip, sizeof(ip)), -1);
	CHECK_INT(peer_address_parse("127.0.0.1", &sa, ip, sizeof(ip)), -1);
	CHECK_INT(peer_address_parse(":80", &sa, ip, sizeof(ip)), -1);
}

UNIT_MAIN(TEST_ENTRY(raft_round_trip), TEST_ENTRY(grpc_preface), TEST_ENTRY(bad),
          TEST_ENTRY(addresses))
