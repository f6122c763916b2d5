/* Zoo, C, faithful writer: the seed's writer as a straight C port.
 * Like the original it checks nothing: ftok's -1 becomes key 0xffffffff,
 * shmget's and shmat's results are used as they come, and the line goes
 * straight into the segment with no bound (what gets() did). */
#include <stdio.h>
#include <sys/ipc.h>
#include <sys/shm.h>

int main(void)
{
    key_t key = ftok("shmfile", 65);
    int shmid = shmget(key, 1024, 0666 | IPC_CREAT);
    char *str = (char *)shmat(shmid, NULL, 0);

    printf("Write Data: ");
    /* gets(str), spelled out: gets is gone from C11. */
    int c = getchar();
    if (c != EOF) {
        size_t n = 0;
        while (c != EOF && c != '\n') {
            str[n++] = (char)c;
            c = getchar();
        }
        str[n] = '\0';
    }
    printf("Data written in memory: %s\n", str);

    shmdt(str);
    return 0;
}
