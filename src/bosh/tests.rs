use super::*;

#[test]
fn sids_are_128_random_bits() {
    let a = new_sid();
    let b = new_sid();
    assert_eq!(a.len(), 32);
    assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
    assert_ne!(a, b);
}

#[test]
fn the_version_is_the_lower_of_both() {
    assert_eq!(version(Some("1.6")), "1.6");
    assert_eq!(version(Some("1.11")), "1.11");
    assert_eq!(version(Some("2.0")), "1.11");
    assert_eq!(version(Some("1.20")), "1.11");
    assert_eq!(version(None), "1.11");
    assert_eq!(version(Some("x")), "1.11");
}
