# Zoo, Perl, hardened pair: options, key and failure reporting shared by
# writer-hardened.pl and reader-hardened.pl. Every call is checked; a failure
# is one line on stderr and exit status 1 (usage: 2). ZOO_FAULT=<name> turns
# on one of the zoo's injected faults (see ../README.md).
package ZooHardened;
use strict;
use warnings;
use Getopt::Long qw(GetOptionsFromArray);
use IPC::SysV qw(ftok);
use Exporter 'import';
our @EXPORT = qw(fault fail options key_of);

our $prog = 'zoo-perl';

sub fault { my ($name) = @_; return ($ENV{ZOO_FAULT} // '') eq $name }

sub fail {
    my ($msg) = @_;
    exit 0 if fault('writer-silent-exit') && $prog =~ /writer/;
    print STDERR "$prog: $msg\n";
    exit 1;
}

sub options {
    my ($writer) = @_;
    my %o = (key_file => 'shmfile', proj_id => 65, size => 1024, mode => '666');
    my @spec = ('key-file=s' => \$o{key_file}, 'proj-id=i' => \$o{proj_id}, 'key=s' => \$o{key},
                'size=i' => \$o{size}, 'mode=s' => \$o{mode});
    push @spec, $writer ? ('exclusive' => \$o{exclusive}) : ('keep' => \$o{keep});
    my @args = @ARGV;
    local $SIG{__WARN__} = sub { print STDERR "$prog: $_[0]" };
    GetOptionsFromArray(\@args, @spec) or usage('unknown or malformed option');
    usage("unexpected argument '$args[0]'") if @args;
    usage("--size $o{size} is not a positive size") if $o{size} < 1;
    usage("--mode $o{mode} is not octal permission bits") unless $o{mode} =~ /^[0-7]{1,3}$/;
    $o{perm} = oct($o{mode});
    if (defined $o{key}) {
        usage("--key $o{key} is not a 32-bit hexadecimal key")
            unless $o{key} =~ /^(?:0[xX])?([0-9a-fA-F]{1,8})$/;
        $o{key} = hex($1);
        usage('--key 0 would be IPC_PRIVATE, unreachable by others') if $o{key} == 0;
        $o{key} -= 2**32 if $o{key} >= 2**31;    # key_t is signed
    }
    return \%o;
}

sub usage { print STDERR "$prog: $_[0]\n"; exit 2 }

sub key_of {
    my ($o) = @_;
    return $o->{key} if defined $o->{key};
    my $proj = $o->{proj_id} + (fault('wrong-proj-id') ? 1 : 0);
    fail("project id $o->{proj_id} has a zero low byte: ftok cannot use it") if ($proj & 0xff) == 0;
    fail("key file '$o->{key_file}': $!") unless stat $o->{key_file};
    my $key = ftok($o->{key_file}, $proj);
    fail("ftok('$o->{key_file}'): $!") unless defined $key;
    return $key;
}

1;
