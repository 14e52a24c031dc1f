#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/ipc.h>
#include <sys/msg.h>

struct msg { long type; char text[16]; };

int main(int argc, char **argv) {
    key_t key = 0x6c6;
    if (argc > 1 && strcmp(argv[1], "-producer") == 0) {
        int q = msgget(key, IPC_CREAT | 0600);
        if (q < 0) { perror("msgget"); return 1; }
        srand(getpid());
        for (int i = 0; i < 5; i++) {
            struct msg m = { 1, "" };
            snprintf(m.text, sizeof m.text, "%02x", rand() % 256);
            if (msgsnd(q, &m, sizeof m.text, 0) < 0) { perror("msgsnd"); return 1; }
            printf("Produced: %s\n", m.text);
            fflush(stdout);
        }
        struct msg d = { 1, "done" };
        msgsnd(q, &d, sizeof d.text, 0);
        printf("Produced: done\n");
        return 0;
    }
    /* The consumer may start first: it waits for the queue. */
    int q = -1;
    for (int i = 0; i < 200 && q < 0; i++) {
        q = msgget(key, 0600);
        if (q < 0) usleep(50000);
    }
    if (q < 0) { perror("msgget"); return 1; }
    for (;;) {
        struct msg m;
        if (msgrcv(q, &m, sizeof m.text, 0, 0) < 0) { perror("msgrcv"); return 1; }
        printf("Consumed: %s\n", m.text);
        fflush(stdout);
        if (strcmp(m.text, "done") == 0) break;
    }
    msgctl(q, IPC_RMID, 0);
    return 0;
}
