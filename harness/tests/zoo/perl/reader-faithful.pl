#!/usr/bin/perl
# Zoo, Perl, faithful reader: the seed's reader with IPC::SysV's ftok, shmat,
# memread and shmdt and Perl's shmget and shmctl. It checks nothing, as the
# original.
use IPC::SysV qw(IPC_CREAT IPC_RMID ftok shmat shmdt memread);

# C's failure value -1 where Perl says undef, so the calls are the seed's:
# undef would be key 0 (IPC_PRIVATE) and segment id 0 (somebody's segment).
my $key = ftok("shmfile", 65) // -1;
my $shmid = shmget($key, 1024, 0666 | IPC_CREAT) // -1;
my $addr = shmat($shmid, undef, 0);

memread($addr, my $str, 0, 1024);
$str =~ s/\0.*//s;
print "Data read from memory: $str\n";

shmdt($addr);
shmctl($shmid, IPC_RMID, 0);
