/* test_refusal_log.c - refusal logging cannot be blinded: a flood of
 * refusals from many addresses gives at most CCL_LOG_LINES lines of their
 * own per window, then one summary line per window that counts the rest
 * and their addresses; a window without refusals says nothing. */
#include "ccl.h"
#include "harness.h"
#include "log.h"
#include "sock.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

static int read_all(char lines[][512], int max)
{
    int n = 0, level;
    char buf[512];
    while (ccl_log_read(&level, buf, sizeof buf, 0)) {
        if (n < max)
            snprintf(lines[n], 512, "%s", buf);
        n++;
    }
    return n;
}

int main(void)
{
    static char lines[2000][512];
    ccl_log_capture(1);
    read_all(lines, 2000);
    ccl__log_once l;
    memset(&l, 0, sizeof l);
    l.window_ms = 300;
    char addr[64];
    /* 1000 refusals from 300 addresses (127.1.x.y), two causes. */
    for (int i = 0; i < 1000; i++) {
        snprintf(addr, sizeof addr, "127.1.%d.%d:%d", (i % 300) / 200, (i % 300) % 200,
                 40000 + i);
        ccl__log_refusal(&l, "pyccl master", addr, i % 2 ? "bad hello" : "wrong key");
    }
    int n = read_all(lines, 2000);
    PASS(n == CCL_LOG_LINES);
    PASS(strstr(lines[0], "pyccl master: refused connection from 127.1.0.0:") != NULL);
    usleep(350000);
    ccl__log_refusal_tick(&l, ccl__now_ms());
    n = read_all(lines, 2000);
    PASS(n == 1);
    char want[128];
    snprintf(want, sizeof want, "%d refusals from %d addresses in the last",
             1000 - CCL_LOG_LINES, 300);
    PASS(n >= 1 && strstr(lines[0], want) != NULL);
    if (n >= 1)
        fprintf(stderr, "  summary: %s\n", lines[0]);
    /* More addresses than are counted one by one. */
    for (int i = 0; i < 3000; i++) {
        snprintf(addr, sizeof addr, "127.2.%d.%d:1", i / 250, i % 250);
        ccl__log_refusal(&l, "pyccl rank 0", addr, "silent");
    }
    usleep(350000);
    ccl__log_refusal_tick(&l, ccl__now_ms());
    n = read_all(lines, 2000);
    PASS(n == CCL_LOG_LINES + 1);
    PASS(n >= 1 && strstr(lines[n - 1 < 2000 ? n - 1 : 0], "more than 512 addresses") != NULL);
    /* A quiet window: nothing. */
    usleep(350000);
    ccl__log_refusal_tick(&l, ccl__now_ms());
    PASS(read_all(lines, 2000) == 0);
    PASS(l.total == 4000);
    ccl_log_capture(0);
    return HARNESS_DONE("test_refusal_log");
}
