/* Zoo, C, hardened reader. Opens or creates the segment, attaches read-only,
 * prints the bytes up to the first NUL (never past the segment's real size),
 * detaches, and removes it unless --keep. */
#include "hardened.h"

int main(int argc, char **argv)
{
    prog = "zoo-c-reader";
    struct opts o = parse(argc, argv, 0);
    key_t key = key_of(&o);
    int mode = fault("reader-mode-0600") ? 0600 : o.mode;

    int shmid = shmget(key, o.size, mode | IPC_CREAT);
    if (shmid < 0)
        die("shmget(%#x, %zu bytes) failed: %s", (unsigned)key, o.size, strerror(errno));
    struct shmid_ds ds;
    if (shmctl(shmid, IPC_STAT, &ds) != 0)
        die("IPC_STAT on segment %d failed: %s", shmid, strerror(errno));
    const char *seg = shmat(shmid, NULL, SHM_RDONLY);
    if (seg == (const char *)-1)
        die("shmat(%d) failed: %s", shmid, strerror(errno));

    size_t len = strnlen(seg, ds.shm_segsz);
    size_t skip = fault("reader-drop-first") && len > 0 ? 1 : 0;
    if (fputs("Data read from memory: ", stdout) == EOF
        || fwrite(seg + skip, 1, len - skip, stdout) != len - skip || fputc('\n', stdout) == EOF
        || fflush(stdout) != 0)
        die("cannot write what was read: %s", strerror(errno));

    if (shmdt(seg) != 0)
        die("shmdt failed: %s", strerror(errno));
    if (fault("reader-double-detach"))
        (void)shmdt(seg); /* the fault: a second detach whose failure nobody sees */
    if (!o.keep && !fault("reader-no-rmid") && shmctl(shmid, IPC_RMID, NULL) != 0)
        die("IPC_RMID on segment %d failed: %s", shmid, strerror(errno));
    return 0;
}
