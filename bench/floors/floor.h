/* What every floor program shares: the clock, the quantiles, its one
 * argument, the futex call. */
#include <linux/futex.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* FUTEX_WAIT or FUTEX_WAKE on a word in memory shared between processes. */
static void futex(atomic_int *word, int op, int value) {
    syscall(SYS_futex, word, op, value, NULL, NULL, 0);
}

static double now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Sorts the n samples, for `quantile`. */
static void sort_samples(double *samples, int n) {
    qsort(samples, n, sizeof *samples, by_value);
}

/* The value at fraction q of n sorted samples. */
static double quantile(const double *sorted, int n, double q) {
    return sorted[(int)(n * q)];
}

/* The positive count of argv[1]; exits with the usage on anything else. */
static int positive_arg(int argc, char **argv, const char *usage) {
    int n = argc > 1 ? atoi(argv[1]) : 0;
    if (n < 1) {
        fprintf(stderr, "usage: %s\n", usage);
        exit(2);
    }
    return n;
}

/* The positive count of argv[1] (cycles or round trips), and room for as
 * many samples; exits with the usage on anything else. */
static int count_arg(int argc, char **argv, const char *usage, double **samples) {
    int n = positive_arg(argc, argv, usage);
    *samples = malloc(n * sizeof **samples);
    if (!*samples) {
        perror("malloc");
        exit(1);
    }
    return n;
}
