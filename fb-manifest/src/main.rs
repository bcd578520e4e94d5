fn main() -> std::process::ExitCode {
    fb_manifest::run(fb_manifest::parse())
}
