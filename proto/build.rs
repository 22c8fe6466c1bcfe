// protox compiles the schema in pure Rust, so building needs no system `protoc`.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/trade_envelope.proto");
    let descriptors = protox::compile(["proto/trade_envelope.proto"], ["proto"])?;
    prost_build::Config::new().compile_fds(descriptors)?;
    Ok(())
}
