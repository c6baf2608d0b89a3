package bench

//go:generate go tool bpf2go -tags linux -cc clang -cflags "-O2 -g -Wall -Werror" -target bpfel benchXDP xdp.c -- -I../bpf/include
