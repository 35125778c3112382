//! Compiles `schema/*.proto` into Rust with prost. The schema is parsed by
//! protox, a pure-Rust protobuf compiler, so building needs no system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=schema");
    let descriptors = protox::compile(["schema/kv.proto", "schema/storage.proto"], ["schema"])?;
    prost_build::Config::new()
        // Large and rare: boxed, so that every `Body` stays small.
        .boxed(".ringkv.Envelope.body.metrics_reply")
        .boxed(".ringkv.Envelope.body.status_reply")
        .compile_fds(descriptors)?;
    Ok(())
}
