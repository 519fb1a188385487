/* unit.h - a tiny test runner for Bollard's unit tests.
 *
 * A test file defines test functions with TEST(name), lists them with
 * UNIT_MAIN(TEST_ENTRY(a), TEST_ENTRY(b), ...), and gets a main() that runs
 * each test in a child process of its own (a crash fails only that test),
 * optionally only the tests named on the command line, and ends with the
 * line "N passed, N failed". CHECK* record a failure and go on; REQUIRE*
 * stop the test. */
#ifndef BOLLARD_TESTS_UNIT_H
#define BOLLARD_TESTS_UNIT_H

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

struct unit_test {
	const char *name;
	void (*fn)(void);
};

/* Failures of the running test (in its child process). */
extern int unit_failures;

void unit_fail(const char *file, int line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
int unit_main(int argc, char **argv, const struct unit_test *tests, size_t n);
/* Leave the running test now (after a failed REQUIRE). */
void unit_abort_test(void) __attribute__((noreturn));

#define TEST(name) static void test_##name(void)
#define TEST_ENTRY(name) {#name, test_##name}
#define UNIT_MAIN(...)                                                                   \
	static const struct unit_test unit_tests_[] = {__VA_ARGS__};                      \
	int main(int argc, char **argv)                                                   \
	{                                                                                 \
		return unit_main(argc, argv, unit_tests_,                                     \
		                 sizeof(unit_tests_) / sizeof(unit_tests_[0]));               \
	}

#define CHECK(cond)                                                                      \
	do {                                                                              \
		if (!(cond))                                                                  \
			unit_fail(__FILE__, __LINE__, "CHECK(%s)", #cond);                        \
	} while (0)

#define CHECK_INT(a, b)                                                                  \
	do {                                                                              \
		long long a_ = (long long)(a), b_ = (long long)(b);                           \
		if (a_ != b_)                                                                 \
			unit_fail(__FILE__, __LINE__, "%s == %lld, expected %s == %lld", #a, a_, \
			          #b, b_);                                                    \
	} while (0)

/* Compare a ProtobufCBinaryData with a C string. */
#define CHECK_BYTES(bin, str)                                                            \
	do {                                                                              \
		const char *s_ = (str);                                                       \
		size_t l_ = strlen(s_);                                                       \
		if ((bin).len != l_ || (l_ && memcmp((bin).data, s_, l_) != 0))               \
			unit_fail(__FILE__, __LINE__, "%s == \"%.*s\", expected \"%s\"", #bin,   \
			          (int)(bin).len, (const char *)(bin).data, s_);                  \
	} while (0)

#define REQUIRE(cond)                                                                    \
	do {                                                                              \
		if (!(cond)) {                                                                \
			unit_fail(__FILE__, __LINE__, "REQUIRE(%s)", #cond);                      \
			unit_abort_test();                                                        \
		}                                                                             \
	} while (0)

#define REQUIRE_INT(a, b)                                                                \
	do {                                                                              \
		long long a_ = (long long)(a), b_ = (long long)(b);                           \
		if (a_ != b_) {                                                               \
			unit_fail(__FILE__, __LINE__, "%s == %lld, expected %s == %lld", #a, a_, \
			          #b, b_);                                                    \
			unit_abort_test();                                                        \
		}                                                                             \
	} while (0)

#endif
