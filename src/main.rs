use std::process::ExitCode;

fn main() -> ExitCode {
    match wick::cli::run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line, never a backtrace: users script against this.
            let msg = e.to_string().replace('\n', " ");
            eprintln!("error: {msg}");
            ExitCode::FAILURE
        }
    }
}
