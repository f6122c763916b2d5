<?php
// Zoo, PHP, faithful writer: the seed's writer with shmop. Like the original it
// checks nothing: ftok's -1 is key 0xffffffff, shmop_open's result is used as
// it comes. shmop_write bounds the copy to the segment, so a long line is cut
// at 1024 bytes with no terminator instead of overrunning.
$key = ftok("shmfile", "A"); // proj_id 65
$shm = shmop_open($key, "c", 0666, 1024);

echo "Write Data: ";
$line = fgets(STDIN);
if ($line !== false) { // gets() at end of input stores nothing
    if (substr($line, -1) === "\n") {
        $line = substr($line, 0, -1);
    }
    shmop_write($shm, $line . "\0", 0);
}
$str = shmop_read($shm, 0, 1024);
$nul = strpos($str, "\0");
echo "Data written in memory: " . ($nul === false ? $str : substr($str, 0, $nul)) . "\n";
// shmdt happens when $shm is freed at exit.
