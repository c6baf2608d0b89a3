// Package bpf holds hanat's fast-path programs, XDP and tc (C sources,
// bpf2go bindings and the committed BPF objects), and a typed Go API over
// their maps.
//
// Regenerate with `go generate ./bpf/...` (clang and libbpf-dev's
// /usr/include/bpf headers needed; the kernel UAPI subset is vendored in
// include/). Only the little-endian target is built: amd64 and arm64, the
// EC2 architectures, are both little-endian.
package bpf

//go:generate go tool bpf2go -tags linux -cc clang -cflags "-O2 -g -Wall -Werror" -target bpfel -type flow_key -type flow_value -type counter_id -type fastpath_stats Fastpath fastpath.c -- -I./include
//go:generate go tool bpf2go -tags linux -cc clang -cflags "-O2 -g -Wall -Werror" -target bpfel FastpathTc fastpath_tc.c -- -I./include
//go:generate go tool bpf2go -tags linux -cc clang -cflags "-O2 -g -Wall -Werror" -target bpfel Floor floor.c -- -I./include
//go:generate go tool bpf2go -tags linux -cc clang -cflags "-O2 -g -Wall -Werror" -target bpfel -type gwlb_flow_key -type gwlb_flow -type gwlb_member -type gwlb_neigh -type gwlb_reason Gwlb gwlb.c -- -I./include
