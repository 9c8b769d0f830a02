//! Compiles proto/lp.proto into the gRPC client and server (pure Rust: protox
//! parses the .proto, so no protoc is needed).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/lp.proto");
    let descriptors = protox::compile(["proto/lp.proto"], ["proto"])?;
    tonic_prost_build::configure().compile_fds(descriptors)?;
    Ok(())
}
