/* The memcpy reference of benches/compare.sh: one thread copies BLOCK-byte blocks between two
 * BUFFER-byte buffers (pages touched first), walking the buffers as the bench does, for SECONDS,
 * and prints "throughput X GB/s" (GB = 1e9 bytes). Usage: memcpy_ref BLOCK BUFFER SECONDS */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s BLOCK BUFFER SECONDS\n", argv[0]);
        return 2;
    }
    size_t block = strtoull(argv[1], NULL, 10), buffer = strtoull(argv[2], NULL, 10);
    double seconds = atof(argv[3]);
    if (block == 0 || buffer < block) {
        fprintf(stderr, "need 0 < BLOCK <= BUFFER\n");
        return 2;
    }
    char *src = malloc(buffer), *dst = malloc(buffer);
    if (!src || !dst) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    memset(src, 1, buffer);
    memset(dst, 2, buffer);
    size_t blocks = buffer / block, i = 0;
    unsigned long long moved = 0;
    double start = now(), end = start + seconds, t = start;
    while (t < end) {
        for (int k = 0; k < 64; k++, i = (i + 1) % blocks) {
            memcpy(dst + i * block, src + i * block, block);
            moved += block;
        }
        t = now();
    }
    /* Keep the copies observable. */
    if (dst[buffer / 2] != 1 && dst[buffer / 2] != 2) return 1;
    printf("memcpy: block %zu, throughput %.4f GB/s\n", block, moved / (t - start) / 1e9);
    free(src);
    free(dst);
    return 0;
}
