#!/usr/bin/perl
# Zoo, Perl, hardened reader: Perl's own shmread (which attaches, copies and
# detaches in one call, after checking the segment's real size), then IPC_RMID,
# every result checked.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use IPC::SysV qw(IPC_CREAT IPC_RMID IPC_STAT);
use ZooHardened;

$ZooHardened::prog = 'zoo-perl-reader';
my $o = options(0);
my $key = key_of($o);
my $perm = fault('reader-mode-0600') ? 0600 : $o->{perm};

my $shmid = shmget($key, $o->{size}, $perm | IPC_CREAT);
fail(sprintf('shmget for key 0x%08x: %s', $key & 0xffffffff, $!)) unless defined $shmid;
my $buf;
shmread($shmid, $buf, 0, $o->{size}) or fail("shmread of segment $shmid: $!");
$buf =~ s/\0.*//s;
substr($buf, 0, 1) = '' if fault('reader-drop-first') && length $buf;
binmode STDOUT;
print "Data read from memory: $buf\n" or fail("stdout: $!");
close STDOUT or fail("stdout: $!");
unless ($o->{keep} || fault('reader-no-rmid')) {
    shmctl($shmid, IPC_RMID, 0) or fail("IPC_RMID of segment $shmid: $!");
}
exit 0;
