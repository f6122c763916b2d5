module shmconf.zoo/go

go 1.19
