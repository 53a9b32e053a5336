fn main() -> std::process::ExitCode {
    nonrootd::cli::main()
}
