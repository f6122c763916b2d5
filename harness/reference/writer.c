#include "common.h"

int main(int argc, char **argv)
{
    struct options o;
    parse_options(argc, argv, &o);
    key_t key = option_key(&o);
    int shmid = shmget(key, o.size, o.mode | IPC_CREAT | (o.exclusive ? IPC_EXCL : 0));
    char *str = (char *)shmat(shmid, NULL, 0);

    /* No fflush, as the original: on a pipe the prompt stays in stdio's
     * buffer until exit, so no scenario may wait for it. */
    printf("Write Data: ");

    /* gets() semantics, as the original: no bound, the newline dropped, a
     * NUL appended; at EOF before any byte the buffer is left untouched. */
    int c, n = 0;
    while ((c = getchar()) != EOF && c != '\n')
        str[n++] = (char)c;
    if (n > 0 || c == '\n')
        str[n] = '\0';

    printf("Data written in memory: %s\n", str);
    shmdt(str);
    return 0;
}
