/* The bare system calls under a round trip that sleeps (pool_apply_latency
 * when nothing spins): two processes hand a counter back and forth through
 * shared memory, each sleeping in FUTEX_WAIT until the other's FUTEX_WAKE.
 * Prints one JSON line: the median and 99th percentile round trip in µs.
 * usage: futex_round_trip ROUND_TRIPS */
#include <linux/futex.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "floor.h"

/* Sleeps while *word is still `seen`. */
static void wait_past(atomic_int *word, int seen) {
    while (atomic_load(word) == seen)
        futex(word, FUTEX_WAIT, seen);
}

static void post(atomic_int *word, int value) {
    atomic_store(word, value);
    futex(word, FUTEX_WAKE, 1);
}

int main(int argc, char **argv) {
    double *trip;
    int n = count_arg(argc, argv, "futex_round_trip ROUND_TRIPS", &trip);
    /* Two words on separate cache lines. */
    atomic_int *shared = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (shared == MAP_FAILED) { perror("mmap"); return 1; }
    atomic_int *ping = shared, *pong = shared + 16;
    pid_t pid = fork();
    if (pid < 0) { perror("fork"); return 1; }
    if (pid == 0) {
        for (int i = 1; i <= n; i++) {
            wait_past(ping, i - 1);
            post(pong, i);
        }
        _exit(0);
    }
    for (int i = 1; i <= n; i++) {
        double start = now_us();
        post(ping, i);
        wait_past(pong, i - 1);
        trip[i - 1] = now_us() - start;
    }
    if (waitpid(pid, NULL, 0) != pid) { perror("waitpid"); return 1; }
    sort_samples(trip, n);
    printf("{\"bench\": \"pool_apply_latency\", \"impl\": \"floor\", \"floor\": \"futex_round_trip\", \"n\": %d, \"p50_us\": %.2f, \"p99_us\": %.2f}\n", n,
           quantile(trip, n, 0.5), quantile(trip, n, 0.99));
    return 0;
}
