/* SPDX-License-Identifier: MIT */
/*
 * Replays a committed corpus through one fuzz target without libFuzzer, so
 * normal builds (any compiler, any sanitizer) keep every corpus input
 * passing. Usage: fuzz_<x> CORPUS_DIR. Inputs run in name order, each from
 * its own heap buffer of exactly its size so a sanitizer sees overreads.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Reads all of <fd> into a buffer of exactly its size; returns 0 or -errno. */
static int read_input(int fd, size_t size, uint8_t **out)
{
	uint8_t *buf = malloc(size ? size : 1);
	size_t got = 0;

	if (!buf)
		return -ENOMEM;
	while (got < size) {
		ssize_t n = read(fd, buf + got, size - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			int r = n < 0 ? -errno : -EIO;

			free(buf);
			return r;
		}
		got += (size_t)n;
	}
	*out = buf;
	return 0;
}

int main(int argc, char **argv)
{
	const char *dir;
	char **names = NULL;
	size_t nnames = 0, cap = 0;
	struct dirent *de;
	DIR *d = NULL;
	int rc = 1, dfd;

	if (argc != 2) {
		fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
		return 1;
	}
	dir = argv[1];
	d = opendir(dir);
	if (!d) {
		fprintf(stderr, "%s: cannot open corpus directory %s: %s\n", argv[0], dir, strerror(errno));
		return 1;
	}
	dfd = dirfd(d);
	while ((de = readdir(d))) {
		struct stat st;

		if (fstatat(dfd, de->d_name, &st, 0) < 0 || !S_ISREG(st.st_mode))
			continue;
		if (nnames == cap) {
			char **n = realloc(names, (cap ? 2 * cap : 64) * sizeof(*names));

			if (!n) {
				fprintf(stderr, "%s: out of memory\n", argv[0]);
				goto out;
			}
			names = n;
			cap = cap ? 2 * cap : 64;
		}
		if (!(names[nnames] = strdup(de->d_name))) {
			fprintf(stderr, "%s: out of memory\n", argv[0]);
			goto out;
		}
		nnames++;
	}
	if (nnames == 0) {
		fprintf(stderr, "%s: corpus directory %s holds no inputs\n", argv[0], dir);
		goto out;
	}
	qsort(names, nnames, sizeof(*names), cmp_names);
	if (LLVMFuzzerInitialize)
		LLVMFuzzerInitialize(&argc, &argv);
	for (size_t i = 0; i < nnames; i++) {
		uint8_t *buf = NULL;
		struct stat st;
		int fd = openat(dfd, names[i], O_RDONLY | O_CLOEXEC);
		int r;

		if (fd < 0 || fstat(fd, &st) < 0) {
			fprintf(stderr, "%s: %s/%s: %s\n", argv[0], dir, names[i], strerror(errno));
			if (fd >= 0)
				close(fd);
			goto out;
		}
		r = read_input(fd, (size_t)st.st_size, &buf);
		close(fd);
		if (r < 0) {
			fprintf(stderr, "%s: reading %s/%s: %s\n", argv[0], dir, names[i], strerror(-r));
			goto out;
		}
		LLVMFuzzerTestOneInput(buf, (size_t)st.st_size);
		free(buf);
	}
	printf("replayed %zu inputs from %s\n", nnames, dir);
	rc = 0;
out:
	for (size_t i = 0; i < nnames; i++)
		free(names[i]);
	free(names);
	closedir(d);
	return rc;
}
