/* The bare system calls under pool_startup's Pool(2) cycle: fork three
 * children (a pool's zygote and two workers; each touches 16 KiB of stack,
 * says it is ready on a pipe and waits for its pipe to close), start two
 * threads, then stop and reap the workers, join the threads, stop and reap
 * the third child. Prints one JSON line: the median cycle in seconds.
 * usage: pool_cycle CYCLES */
#include <pthread.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "floor.h"

static void check(int ok, const char *what) {
    if (!ok) { perror(what); exit(1); }
}

struct child { pid_t pid; int ready; int stop; };

/* Forks a child; its readiness is read later, so the three forks overlap
 * the children's first runs, as a pool's do. */
static struct child fork_child(void) {
    int ready[2], stop[2];
    check(pipe(ready) == 0 && pipe(stop) == 0, "pipe");
    pid_t pid = fork();
    check(pid >= 0, "fork");
    if (pid == 0) {
        char stack[16384], c;
        close(ready[0]);
        close(stop[1]);
        memset(stack, 1, sizeof stack);
        if (write(ready[1], "r", 1) != 1) _exit(1);
        _exit(read(stop[0], &c, 1) < 0 || stack[100] != 1);
    }
    close(ready[1]);
    close(stop[0]);
    return (struct child){ pid, ready[0], stop[1] };
}

static void await_ready(struct child *c) {
    char byte;
    check(read(c->ready, &byte, 1) == 1, "read");
    close(c->ready);
}

/* Each child holds the stop pipes of those forked before it: all are
 * told to stop before any is waited for. */
static void reap(struct child *c) {
    check(waitpid(c->pid, NULL, 0) == c->pid, "waitpid");
}

static void *wait_for_stop(void *fd) {
    char byte;
    return (void *)(long)read(*(int *)fd, &byte, 1);
}

int main(int argc, char **argv) {
    double *cycle;
    int n = count_arg(argc, argv, "pool_cycle CYCLES", &cycle);
    for (int i = 0; i < n; i++) {
        double start = now_us();
        struct child zygote = fork_child(), a = fork_child(), b = fork_child();
        await_ready(&a);
        await_ready(&b);
        await_ready(&zygote);
        int stop[2];
        pthread_t t1, t2;
        check(pipe(stop) == 0, "pipe");
        check(pthread_create(&t1, NULL, wait_for_stop, &stop[0]) == 0, "pthread_create");
        check(pthread_create(&t2, NULL, wait_for_stop, &stop[0]) == 0, "pthread_create");
        close(a.stop);
        close(b.stop);
        reap(&a);
        reap(&b);
        check(write(stop[1], "xx", 2) == 2, "write");
        pthread_join(t1, NULL);
        pthread_join(t2, NULL);
        close(stop[0]);
        close(stop[1]);
        close(zygote.stop);
        reap(&zygote);
        cycle[i] = now_us() - start;
    }
    sort_samples(cycle, n);
    printf("{\"bench\": \"pool_startup\", \"impl\": \"floor\", \"floor\": \"pool_cycle\", \"n\": %d, \"median_cycle_seconds\": %.6f}\n", n,
           quantile(cycle, n, 0.5) / 1e6);
    return 0;
}
