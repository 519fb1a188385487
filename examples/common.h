/* common.h - what both examples share: open a store embedded (--data-dir D)
 * or remote (--endpoints H:P[,H:P...]) from argv, over bollard/store.h only. */
#ifndef BOLLARD_EXAMPLES_COMMON_H
#define BOLLARD_EXAMPLES_COMMON_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <bollard/store.h>

/* Consumes "--data-dir D" or "--endpoints LIST" from argv; returns 0 or an
 * error (printed). The other arguments are left in args[0..*n). */
static inline int example_open(struct bollard_client **c, uv_loop_t *loop, int argc, char **argv,
                               char **args, int *n)
{
	const char *dir = NULL, *eps = NULL;
	int rc;

	*n = 0;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--data-dir") && i + 1 < argc)
			dir = argv[++i];
		else if (!strcmp(argv[i], "--endpoints") && i + 1 < argc)
			eps = argv[++i];
		else
			args[(*n)++] = argv[i];
	}
	if (dir) {
		struct bollard_embedded_options o = {.data_dir = dir, .log_level = "warn"};
		rc = bollard_open_embedded(c, loop, &o);
	} else if (eps) {
		char *list = strdup(eps), *save = NULL;
		const char *v[16];
		size_t k = 0;
		for (char *t = strtok_r(list, ",", &save); t && k < 16; t = strtok_r(NULL, ",", &save))
			v[k++] = t;
		rc = bollard_connect(c, loop, v, k, NULL);
		free(list);
	} else {
		fprintf(stderr, "usage: %s (--data-dir DIR | --endpoints HOST:PORT[,...]) ...\n", argv[0]);
		return -1;
	}
	if (rc != 0)
		fprintf(stderr, "%s: cannot open the store: %s\n", argv[0], bollard_strerror(rc));
	return rc;
}

#endif
