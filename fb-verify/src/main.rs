use clap::Parser;

fn main() -> std::process::ExitCode {
    fb_verify::run(fb_verify::Cli::parse())
}
