<?php
// Zoo, PHP, faithful reader: the seed's reader with shmop, checking nothing.
// shmop_delete is IPC_RMID; the detach comes when $shm is freed at exit, so
// the removal comes first (the segment dies at that detach).
$key = ftok("shmfile", "A"); // proj_id 65
$shm = shmop_open($key, "c", 0666, 1024);

$str = shmop_read($shm, 0, 1024);
$nul = strpos($str, "\0");
echo "Data read from memory: " . ($nul === false ? $str : substr($str, 0, $nul)) . "\n";

shmop_delete($shm);
