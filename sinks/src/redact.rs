//! Passwords out of connection targets before they are printed: one place for the books
//! targets' Display, the Redis options' Debug and `eod config show`.

/// Hides a URL's password: `postgres://user:secret@host` -> `postgres://user:***@host`.
pub fn url_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((credentials, host)) = rest.rsplit_once('@') else {
        return url.to_owned();
    };
    match credentials.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

/// Hides the values of password keys in `key=value;key=value` text: ADO.NET connection
/// strings (`Password=`, `Pwd=`) and librdkafka properties (`sasl.password=`).
pub fn key_value_passwords(text: &str) -> String {
    text.split(';')
        .map(|part| match part.split_once('=') {
            Some((key, _)) if is_password_key(key) => format!("{key}=***"),
            _ => part.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(";")
}

fn is_password_key(key: &str) -> bool {
    let key = key.trim().to_ascii_lowercase();
    matches!(key.as_str(), "password" | "pwd") || key.ends_with(".password")
}

/// Both of the above, for a value of unknown kind.
pub fn secrets(value: &str) -> String {
    key_value_passwords(&url_password(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_connection_strings_and_properties_lose_their_passwords() {
        assert_eq!(
            url_password("postgres://eod:hunter2@127.0.0.1:5432/eod"),
            "postgres://eod:***@127.0.0.1:5432/eod"
        );
        assert_eq!(
            url_password("redis://:pw@host:6379/0"),
            "redis://:***@host:6379/0"
        );
        assert_eq!(url_password("redis://host:6379"), "redis://host:6379");
        assert_eq!(
            key_value_passwords(
                "server=tcp:db,1433;User Id=sa;Password=Secret;TrustServerCertificate=true"
            ),
            "server=tcp:db,1433;User Id=sa;Password=***;TrustServerCertificate=true"
        );
        assert_eq!(key_value_passwords("pwd=x"), "pwd=***");
        assert_eq!(secrets("sasl.password=x"), "sasl.password=***");
        assert_eq!(
            secrets("postgres://u:p@h/db?sslmode=require&sslrootcert=/ca.pem"),
            "postgres://u:***@h/db?sslmode=require&sslrootcert=/ca.pem"
        );
    }
}
