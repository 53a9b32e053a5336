fn main() -> std::process::ExitCode {
    nonrootd::daemon::main()
}
