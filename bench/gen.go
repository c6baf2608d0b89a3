package bench

//go:generate go tool bpf2go -tags linux -cc clang -cflags "-O2 -g -Wall -Werror" -target bpfel BenchXDP xdp.c -- -I../bpf/include
