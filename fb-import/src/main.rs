fn main() -> std::process::ExitCode {
    fb_import::run(fb_import::parse())
}
