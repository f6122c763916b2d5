#include "common.h"

int main(int argc, char **argv)
{
    struct options o;
    parse_options(argc, argv, &o);
    key_t key = option_key(&o);
    int shmid = shmget(key, o.size, o.mode | IPC_CREAT);
    char *str = (char *)shmat(shmid, NULL, 0);

    /* Unbounded scan for the NUL, as the original. */
    printf("Data read from memory: %s\n", str);
    shmdt(str);
    if (!o.keep)
        shmctl(shmid, IPC_RMID, NULL);
    return 0;
}
