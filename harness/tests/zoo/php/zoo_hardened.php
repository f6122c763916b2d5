<?php
// Zoo, PHP, hardened pair: options, key and failure reporting shared by
// writer-hardened.php and reader-hardened.php. Every PHP warning becomes an
// exception; a failure is one line on stderr and exit status 1 (usage: 2).
// ZOO_FAULT=<name> turns on one of the zoo's injected faults (../README.md).
declare(strict_types=1);

ini_set('display_errors', 'stderr');
set_error_handler(function (int $no, string $msg): bool {
    throw new ErrorException($msg, 0, $no);
});

final class ZooFailure extends RuntimeException {}

function zoo_fault(string $name): bool
{
    return getenv('ZOO_FAULT') === $name;
}

function zoo_usage(string $prog, string $why): never
{
    fwrite(STDERR, "$prog: $why\n");
    exit(2);
}

/** @return array{key_file:string, proj_id:int, key:?int, size:int, perm:int, exclusive:bool, keep:bool} */
function zoo_options(string $prog, array $argv, bool $writer): array
{
    $o = ['key_file' => 'shmfile', 'proj_id' => 65, 'key' => null, 'size' => 1024, 'perm' => 0666,
          'exclusive' => false, 'keep' => false];
    $args = array_slice($argv, 1);
    for ($i = 0; $i < count($args); $i++) {
        $a = $args[$i];
        $value = function () use (&$i, $args, $a, $prog): string {
            if (!isset($args[$i + 1])) zoo_usage($prog, "$a needs a value");
            return $args[++$i];
        };
        switch ($a) {
            case '--key-file': $o['key_file'] = $value(); break;
            case '--proj-id':
                $v = $value();
                if (!ctype_digit($v)) zoo_usage($prog, "--proj-id $v is not a number");
                $o['proj_id'] = (int)$v;
                break;
            case '--key':
                $v = preg_replace('/^0[xX]/', '', $value());
                if (!preg_match('/^[0-9a-fA-F]{1,8}$/', $v)) zoo_usage($prog, "--key wants up to 8 hex digits");
                $k = hexdec($v);
                if ($k === 0) zoo_usage($prog, '--key 0 is IPC_PRIVATE: nobody could open it again');
                $o['key'] = $k >= 0x80000000 ? $k - 0x100000000 : $k;
                break;
            case '--size':
                $v = $value();
                if (!ctype_digit($v) || (int)$v < 1) zoo_usage($prog, "--size $v is not a positive size");
                $o['size'] = (int)$v;
                break;
            case '--mode':
                $v = $value();
                if (!preg_match('/^[0-7]{1,3}$/', $v)) zoo_usage($prog, "--mode $v is not octal bits");
                $o['perm'] = octdec($v);
                break;
            case '--exclusive':
                if (!$writer) zoo_usage($prog, '--exclusive is for the writer');
                $o['exclusive'] = true;
                break;
            case '--keep':
                if ($writer) zoo_usage($prog, '--keep is for the reader');
                $o['keep'] = true;
                break;
            default: zoo_usage($prog, "unknown argument $a");
        }
    }
    return $o;
}

function zoo_key(array $o): int
{
    if ($o['key'] !== null) return $o['key'];
    $proj = $o['proj_id'] + (zoo_fault('wrong-proj-id') ? 1 : 0);
    if (($proj & 0xff) === 0) throw new ZooFailure("project id {$o['proj_id']} has a zero low byte");
    clearstatcache();
    if (!file_exists($o['key_file'])) throw new ZooFailure("key file {$o['key_file']} does not exist");
    $key = ftok($o['key_file'], chr($proj & 0xff));
    if ($key === -1) throw new ZooFailure("ftok({$o['key_file']}) failed");
    return $key;
}

function zoo_main(string $prog, callable $body): never
{
    try {
        $body();
    } catch (Throwable $e) {
        if (zoo_fault('writer-silent-exit') && str_contains($prog, 'writer')) exit(0);
        fwrite(STDERR, "$prog: " . $e->getMessage() . "\n");
        exit(1);
    }
    exit(0);
}
