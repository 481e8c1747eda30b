/* The bare system calls under process_spawn_join: fork a child that exits at
 * once, and wait for it. Prints one JSON line: the median cycle in µs.
 * usage: fork_exit_wait CYCLES */
#include <sys/wait.h>
#include <unistd.h>

#include "floor.h"

int main(int argc, char **argv) {
    double *cycle;
    int n = count_arg(argc, argv, "fork_exit_wait CYCLES", &cycle);
    for (int i = 0; i < n; i++) {
        double start = now_us();
        pid_t pid = fork();
        if (pid < 0) { perror("fork"); return 1; }
        if (pid == 0) _exit(0);
        if (waitpid(pid, NULL, 0) != pid) { perror("waitpid"); return 1; }
        cycle[i] = now_us() - start;
    }
    sort_samples(cycle, n);
    printf("{\"bench\": \"process_spawn_join\", \"impl\": \"floor\", \"floor\": \"fork_exit_wait\", \"n\": %d, \"per_process_us\": %.1f}\n", n, quantile(cycle, n, 0.5));
    return 0;
}
