<?php
// Zoo, PHP, hardened writer: shmop, every result checked. It creates with
// "n" (IPC_CREAT|IPC_EXCL) so it knows what it made, else opens with "w",
// checks the segment's size itself, reads through fgets' bound and stores only
// a line that fits: a refused line leaves the table as it was.
declare(strict_types=1);
require __DIR__ . '/zoo_hardened.php';

zoo_main('zoo-php-writer', function () use ($argv): void {
    $o = zoo_options('zoo-php-writer', $argv, true);
    $key = zoo_key($o);
    $created = false;
    try {
        $shm = shmop_open($key, 'n', $o['perm'], $o['size']);
        $created = true;
    } catch (ErrorException $e) {
        if ($o['exclusive']) throw new ZooFailure("exclusive create refused: " . $e->getMessage());
        $shm = shmop_open($key, 'w', 0, 0);
        if (shmop_size($shm) < $o['size']) {
            throw new ZooFailure(sprintf('the segment of key 0x%08x has %d bytes, fewer than the %d asked',
                $key & 0xffffffff, shmop_size($shm), $o['size']));
        }
    }
    try {
        if (fwrite(STDOUT, 'Write Data: ') !== 12) throw new ZooFailure('cannot write the prompt');
        $room = zoo_fault('writer-truncate') ? 100 : $o['size'] - 1;
        $line = fgets(STDIN, $room + 2);
        if ($line === false) {
            if (!feof(STDIN)) throw new ZooFailure('reading standard input failed');
            if (zoo_fault('writer-clear-at-eof')) shmop_write($shm, str_repeat("\0", $o['size']), 0);
            throw new ZooFailure('empty input: there is no line to put in the segment');
        }
        if (str_ends_with($line, "\n")) {
            $line = substr($line, 0, -1);
        } elseif (strlen($line) > $room) {
            if (!zoo_fault('writer-truncate')) {
                throw new ZooFailure("refused: $room bytes of text at most fit this {$o['size']}-byte segment");
            }
            $line = substr($line, 0, $room);
        }
    } catch (Throwable $e) {
        if ($created) shmop_delete($shm);
        throw $e;
    }
    $data = zoo_fault('writer-no-nul') ? $line : $line . "\0";
    if (shmop_write($shm, $data, 0) !== strlen($data)) throw new ZooFailure('short write into the segment');
    $stored = shmop_read($shm, 0, $o['size']);
    $nul = strpos($stored, "\0");
    $out = 'Data written in memory: ' . ($nul === false ? $stored : substr($stored, 0, $nul)) . "\n";
    if (fwrite(STDOUT, $out) !== strlen($out) || !fflush(STDOUT)) throw new ZooFailure('cannot write to stdout');
});
