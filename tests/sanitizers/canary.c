/* SPDX-License-Identifier: Apache-2.0 */
/*
 * canary.c: a program with a memory error on purpose, linked against libmooncake, that
 * ci/test-sanitizers.sh runs under each checker before the real programs and expects to FAIL
 * with exit status 1 and the checker's report. It proves that the checker, its runtime and the
 * exit status wiring work in the very set-up the real programs run in, so that their
 * "0 errors" means something.
 *   canary overflow   reads one byte past a 16-byte heap block (ASan: heap-buffer-overflow;
 *                     memcheck: invalid read);
 *   canary leak       loses a 16-byte heap block (LeakSanitizer and memcheck: definitely lost).
 * Two runs, because ASan stops at the first error (halt_on_error) and LeakSanitizer only looks
 * at exit.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mooncake.h"

int main(int argc, char **argv) {
    if (argc != 2 || (strcmp(argv[1], "overflow") != 0 && strcmp(argv[1], "leak") != 0)) {
        fprintf(stderr, "usage: %s overflow|leak\n", argv[0]);
        return 2;
    }
    /* One call into the library, so that it is loaded and initialised as in the real tests. */
    const char *last = mooncake_last_error();
    printf("canary: library loaded (last error \"%s\")\n", last ? last : "");
    char *block = malloc(16);
    if (block == NULL) return 3;
    memset(block, 1, 16);
    if (strcmp(argv[1], "overflow") == 0) {
        /* A volatile index, so that the compiler neither sees nor warns about the bug. */
        volatile size_t index = 16;
        volatile char past = block[index];
        free(block);
        return past == 42 ? 4 : 0;
    }
    block = NULL; /* leaked */
    return 0;
}
