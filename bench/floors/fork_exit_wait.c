/* The bare system calls under process_spawn_join: fork a child that exits at
 * once, and wait for it. Prints one JSON line: the median cycle in µs.
 * usage: fork_exit_wait CYCLES */
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 0;
    if (n < 1) {
        fprintf(stderr, "usage: fork_exit_wait CYCLES\n");
        return 2;
    }
    double *cycle = malloc(n * sizeof *cycle);
    if (!cycle) return 1;
    for (int i = 0; i < n; i++) {
        double start = now_us();
        pid_t pid = fork();
        if (pid < 0) { perror("fork"); return 1; }
        if (pid == 0) _exit(0);
        if (waitpid(pid, NULL, 0) != pid) { perror("waitpid"); return 1; }
        cycle[i] = now_us() - start;
    }
    qsort(cycle, n, sizeof *cycle, by_value);
    printf("{\"bench\": \"process_spawn_join\", \"impl\": \"floor\", \"floor\": \"fork_exit_wait\", \"n\": %d, \"per_process_us\": %.1f}\n", n, cycle[n / 2]);
    return 0;
}
