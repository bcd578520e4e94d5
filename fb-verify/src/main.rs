fn main() -> std::process::ExitCode {
    fb_verify::run(fb_verify::parse())
}
