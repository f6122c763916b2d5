#!/usr/bin/perl
# Zoo, Perl, hardened writer: IPC::SysV's shmat, memwrite and shmdt, every
# result checked. It tries IPC_EXCL first so it knows whether it made the
# segment; a refused line leaves the table as it was.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use Errno qw(EEXIST ENOENT);
use IPC::SysV qw(IPC_CREAT IPC_EXCL IPC_RMID shmat shmdt memread memwrite);
use ZooHardened;

$ZooHardened::prog = 'zoo-perl-writer';
my $o = options(1);
my $key = key_of($o);

my ($shmid, $created);
for my $try (1 .. 8) {
    $shmid = shmget($key, $o->{size}, $o->{perm} | IPC_CREAT | IPC_EXCL);
    if (defined $shmid) { $created = 1; last }
    fail(sprintf('cannot create a segment for key 0x%08x: %s', $key & 0xffffffff, $!))
        if $! != EEXIST || $o->{exclusive};
    $shmid = shmget($key, $o->{size}, $o->{perm});
    last if defined $shmid;
    fail(sprintf('cannot open the segment of key 0x%08x: %s', $key & 0xffffffff, $!))
        if $! != ENOENT || $try == 8;
}
my $addr = shmat($shmid, undef, 0);
fail("cannot attach segment $shmid: $!") unless defined $addr;

sub refuse {
    my ($msg) = @_;
    defined shmdt($addr) or print STDERR "$ZooHardened::prog: detaching: $!\n";
    if ($created) { shmctl($shmid, IPC_RMID, 0) or print STDERR "$ZooHardened::prog: removing: $!\n" }
    fail($msg);
}

binmode STDIN;
binmode STDOUT;
$| = 1;
print "Write Data: " or refuse("stdout: $!");
my $room = fault('writer-truncate') ? 100 : $o->{size} - 1;
my $line = '';
my $got = 0;
while (1) {
    my $n = sysread(STDIN, my $byte, 1);
    refuse("reading stdin: $!") unless defined $n;
    last if $n == 0;
    $got = 1;
    last if $byte eq "\n";
    if (length($line) == $room) {
        next if fault('writer-truncate');
        refuse("no room: the segment keeps at most $room bytes of text and this line has more");
    }
    $line .= $byte;
    # The fault: each byte into the segment as it comes.
    memwrite($addr, $byte, length($line) - 1, 1) if fault('writer-streams-line');
}
unless ($got) {
    memwrite($addr, "\0" x $o->{size}, 0, $o->{size}) if fault('writer-clear-at-eof');
    refuse('end of input came before any line');
}
my $data = fault('writer-no-nul') ? $line : "$line\0";
memwrite($addr, $data, 0, length $data) or refuse("memwrite: $!");
memread($addr, my $stored, 0, $o->{size}) or refuse("memread: $!");
$stored =~ s/\0.*//s;
print "Data written in memory: $stored\n" or fail("stdout: $!");
defined shmdt($addr) or fail("shmdt: $!");
exit 0;
