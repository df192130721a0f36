/// BPF objects compiled from `BPF/*.bpf.c` by BPFCompilerPlugin, base64 text
/// (the plugin generates the members; see Sources/BPFCompilerPlugin).
enum EmbeddedBPF {}
