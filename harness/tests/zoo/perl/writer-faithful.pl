#!/usr/bin/perl
# Zoo, Perl, faithful writer: the seed's writer with IPC::SysV's ftok, shmat,
# memwrite and shmdt. Like the original it checks nothing, and the line is
# copied into the segment with no bound.
use IPC::SysV qw(IPC_CREAT ftok shmat shmdt memread memwrite);

# C's failure value -1 where Perl says undef, so the calls are the seed's:
# undef would be key 0 (IPC_PRIVATE) and segment id 0 (somebody's segment).
my $key = ftok("shmfile", 65) // -1;
my $shmid = shmget($key, 1024, 0666 | IPC_CREAT) // -1;
my $addr = shmat($shmid, undef, 0);

$| = 1;
print "Write Data: ";
my $line = <STDIN>;
if (defined $line) {    # gets() at end of input stores nothing
    chomp $line;
    memwrite($addr, "$line\0", 0, length($line) + 1);
}
memread($addr, my $str, 0, 1024);
$str =~ s/\0.*//s;
print "Data written in memory: $str\n";

shmdt($addr);
