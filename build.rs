//! Compiles `schema/*.proto` into Rust with prost. The schema is parsed by
//! protox, a pure-Rust protobuf compiler, so building needs no system `protoc`.
//! Also records the git commit the binary is built from, for `--version`,
//! when the source is a git checkout (and nothing when it is not).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=schema");
    let descriptors = protox::compile(["schema/kv.proto", "schema/storage.proto"], ["schema"])?;
    prost_build::Config::new()
        // Large and rare: boxed, so that every `Body` stays small.
        .boxed(".ringkv.Envelope.body.metrics_reply")
        .boxed(".ringkv.Envelope.body.status_reply")
        .compile_fds(descriptors)?;
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_string())
        .unwrap_or_default();
    println!("cargo:rustc-env=RINGKV_GIT_COMMIT={commit}");
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs/heads");
    Ok(())
}
