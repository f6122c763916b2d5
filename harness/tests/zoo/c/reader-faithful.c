/* Zoo, C, faithful reader: the seed's reader as a straight C port.
 * It checks nothing, as the original: shmget creates an empty segment when
 * there is none, and IPC_RMID's result is ignored. */
#include <stdio.h>
#include <sys/ipc.h>
#include <sys/shm.h>

int main(void)
{
    key_t key = ftok("shmfile", 65);
    int shmid = shmget(key, 1024, 0666 | IPC_CREAT);
    char *str = (char *)shmat(shmid, NULL, 0);

    printf("Data read from memory: %s\n", str);

    shmdt(str);
    shmctl(shmid, IPC_RMID, NULL);
    return 0;
}
