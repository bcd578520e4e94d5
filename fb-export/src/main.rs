fn main() -> std::process::ExitCode {
    fb_export::run(fb_export::parse())
}
