/* unit.c - the test runner behind unit.h: one child process per test. */
#include "unit.h"

#include <stdarg.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

int unit_failures;

void unit_fail(const char *file, int line, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "    %s:%d: ", file, line);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	unit_failures++;
}

void unit_abort_test(void)
{
	fflush(NULL);
	exit(1);
}

static bool selected(int argc, char **argv, const char *name)
{
	if (argc < 2)
		return true;
	for (int i = 1; i < argc; i++)
		if (strcmp(argv[i], name) == 0)
			return true;
	return false;
}

int unit_main(int argc, char **argv, const struct unit_test *tests, size_t n)
{
	int passed = 0, failed = 0;
	setvbuf(stdout, NULL, _IOLBF, 0);
	for (size_t i = 0; i < n; i++) {
		if (!selected(argc, argv, tests[i].name))
			continue;
		fflush(NULL);
		pid_t pid = fork();
		if (pid < 0) {
			perror("fork");
			return 2;
		}
		if (pid == 0) {
			unit_failures = 0;
			tests[i].fn();
			fflush(NULL);
			exit(unit_failures ? 1 : 0);
		}
		int st;
		while (waitpid(pid, &st, 0) < 0)
			;
		bool ok = WIFEXITED(st) && WEXITSTATUS(st) == 0;
		if (WIFSIGNALED(st))
			fprintf(stderr, "    killed by signal %d\n", WTERMSIG(st));
		printf("%s %s\n", ok ? "ok  " : "FAIL", tests[i].name);
		if (ok)
			passed++;
		else
			failed++;
	}
	printf("%d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}
