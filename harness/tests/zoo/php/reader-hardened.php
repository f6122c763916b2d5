<?php
// Zoo, PHP, hardened reader: shmop, every result checked; reads the segment's
// real size (shmop_size), prints, then IPC_RMID (shmop_delete) while still
// attached; the detach at exit destroys the segment.
declare(strict_types=1);
require __DIR__ . '/zoo_hardened.php';

zoo_main('zoo-php-reader', function () use ($argv): void {
    $o = zoo_options('zoo-php-reader', $argv, false);
    $key = zoo_key($o);
    $perm = zoo_fault('reader-mode-0600') ? 0600 : $o['perm'];
    $shm = shmop_open($key, 'c', $perm, $o['size']);
    $bytes = shmop_read($shm, 0, shmop_size($shm));
    $nul = strpos($bytes, "\0");
    $text = $nul === false ? $bytes : substr($bytes, 0, $nul);
    if (zoo_fault('reader-drop-first')) $text = substr($text, 1);
    $out = "Data read from memory: $text\n";
    if (fwrite(STDOUT, $out) !== strlen($out) || !fflush(STDOUT)) throw new ZooFailure('cannot write to stdout');
    if (!$o['keep'] && !zoo_fault('reader-no-rmid') && !shmop_delete($shm)) {
        throw new ZooFailure('IPC_RMID refused');
    }
});
