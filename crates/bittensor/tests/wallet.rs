//! A hotkey loads from the wallet layout on disk; an encrypted one is a typed error.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use attesta_bittensor::wallet::{WalletError, WalletSpec};

const KEYFILE: &str = r#"{"cryptoType":1,"accountId":"0xb451816b41cf6a03dd8c79d487d94e4b7080498cff19729e9a4beda3fa9cf131","secretSeed":"0x35781ac389a56979c5b4a68b9fc4146f8fa09ffdaf471bab7f0b66ed127e7ba9","ss58Address":"5G98gtjtmcmLJcW6J7jBsgDxYyBtnytjyprAajzNpzdsK1fH","publicKey":"0xb451816b41cf6a03dd8c79d487d94e4b7080498cff19729e9a4beda3fa9cf131"}"#;

#[test]
fn loads_from_the_wallet_layout_and_refuses_encrypted_files() {
    let dir = tempfile::tempdir().unwrap();
    let hotkeys = dir.path().join("miner/hotkeys");
    std::fs::create_dir_all(&hotkeys).unwrap();
    std::fs::write(hotkeys.join("default"), KEYFILE).unwrap();
    std::fs::write(hotkeys.join("locked"), b"$NACL\x01\x02ciphertext").unwrap();
    let spec = |hotkey: &str| WalletSpec {
        path: dir.path().to_path_buf(),
        name: "miner".into(),
        hotkey: hotkey.into(),
    };
    let k = spec("default").load_hotkey().unwrap();
    assert_eq!(
        k.account().to_ss58(),
        "5G98gtjtmcmLJcW6J7jBsgDxYyBtnytjyprAajzNpzdsK1fH"
    );
    let err = spec("locked").load_hotkey().unwrap_err();
    assert!(
        matches!(
            err,
            WalletError::Encrypted {
                kind: "NaCl secretbox",
                ..
            }
        ),
        "{err}"
    );
    assert!(matches!(
        spec("absent").load_hotkey(),
        Err(WalletError::Io { .. })
    ));
}
