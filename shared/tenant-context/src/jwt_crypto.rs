//! jsonwebtoken's cryptography on ring, the one crypto library of the deployed binaries (the
//! AWS SDK's TLS uses it too). jsonwebtoken ships providers only for aws-lc and RustCrypto;
//! this one covers what the project needs: verifying RS256 (the only algorithm Cognito and the
//! local server sign with, and the only one [`crate::JwtVerifier`] accepts), and, with the
//! `signing` feature, signing RS256/384/512, PS256/384/512 and HS256/384/512 (the local
//! server's tokens; tests forge tokens with the others to check they are refused). The Lambda
//! functions verify only, so they are built without `signing` and carry no signing code.
//! Anything unsupported is an error, never a panic.

use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::{ErrorKind, Result};
#[cfg(feature = "signing")]
use jsonwebtoken::signature::Signer;
use jsonwebtoken::signature::{Error as SignatureError, Verifier};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, DecodingKeyKind, EncodingKey};
use ring::signature as ring_sig;
#[cfg(feature = "signing")]
use ring::{hmac, rand};

/// Makes this module's provider jsonwebtoken's process default. Idempotent and cheap; every
/// entry point that signs or verifies calls it first (a provider cannot be installed after
/// jsonwebtoken has picked its default).
pub fn install() {
    // Err means a provider is already installed: this one, or one a host program chose.
    let _ = PROVIDER.install_default();
}

static PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory: new_signer,
    verifier_factory: new_verifier,
    key_utils: KeyUtils {
        rsa_pub_components_from_private_key: |_| Err(ErrorKind::InvalidKeyFormat.into()),
        rsa_pub_components_from_public_key: |_| Err(ErrorKind::InvalidKeyFormat.into()),
        ec_pub_components_from_private_key: |_, _| Err(ErrorKind::InvalidKeyFormat.into()),
        ed_pub_components_from_private_key: |_, _| Err(ErrorKind::InvalidKeyFormat.into()),
        compute_digest: |_, _| Err(ErrorKind::InvalidAlgorithm.into()),
    },
};

#[cfg(feature = "signing")]
enum SigningKey {
    Rsa(
        ring_sig::RsaKeyPair,
        &'static dyn ring_sig::RsaEncoding,
        Algorithm,
    ),
    Hmac(hmac::Key, Algorithm),
}

#[cfg(feature = "signing")]
impl Signer<Vec<u8>> for SigningKey {
    fn try_sign(&self, msg: &[u8]) -> std::result::Result<Vec<u8>, SignatureError> {
        match self {
            SigningKey::Rsa(pair, encoding, _) => {
                let mut sig = vec![0; pair.public().modulus_len()];
                pair.sign(*encoding, &rand::SystemRandom::new(), msg, &mut sig)
                    .map_err(|_| SignatureError::new())?;
                Ok(sig)
            }
            SigningKey::Hmac(key, _) => Ok(hmac::sign(key, msg).as_ref().to_vec()),
        }
    }
}

#[cfg(feature = "signing")]
impl JwtSigner for SigningKey {
    fn algorithm(&self) -> Algorithm {
        match self {
            SigningKey::Rsa(_, _, alg) | SigningKey::Hmac(_, alg) => *alg,
        }
    }
}

/// Without the `signing` feature nothing signs.
#[cfg(not(feature = "signing"))]
fn new_signer(_alg: &Algorithm, _key: &EncodingKey) -> Result<Box<dyn JwtSigner>> {
    Err(ErrorKind::InvalidAlgorithm.into())
}

#[cfg(feature = "signing")]
fn new_signer(alg: &Algorithm, key: &EncodingKey) -> Result<Box<dyn JwtSigner>> {
    let rsa = |encoding: &'static dyn ring_sig::RsaEncoding| -> Result<Box<dyn JwtSigner>> {
        let pair = ring_sig::RsaKeyPair::from_der(key.as_bytes())
            .map_err(|_| ErrorKind::InvalidKeyFormat)?;
        Ok(Box::new(SigningKey::Rsa(pair, encoding, *alg)))
    };
    let mac = |algorithm: hmac::Algorithm| -> Result<Box<dyn JwtSigner>> {
        Ok(Box::new(SigningKey::Hmac(
            hmac::Key::new(algorithm, key.as_bytes()),
            *alg,
        )))
    };
    match alg {
        Algorithm::RS256 => rsa(&ring_sig::RSA_PKCS1_SHA256),
        Algorithm::RS384 => rsa(&ring_sig::RSA_PKCS1_SHA384),
        Algorithm::RS512 => rsa(&ring_sig::RSA_PKCS1_SHA512),
        Algorithm::PS256 => rsa(&ring_sig::RSA_PSS_SHA256),
        Algorithm::PS384 => rsa(&ring_sig::RSA_PSS_SHA384),
        Algorithm::PS512 => rsa(&ring_sig::RSA_PSS_SHA512),
        Algorithm::HS256 => mac(hmac::HMAC_SHA256),
        Algorithm::HS384 => mac(hmac::HMAC_SHA384),
        Algorithm::HS512 => mac(hmac::HMAC_SHA512),
        _ => Err(ErrorKind::InvalidAlgorithm.into()),
    }
}

/// An RS256 public key.
struct Rs256(DecodingKey);

impl Verifier<Vec<u8>> for Rs256 {
    fn verify(&self, msg: &[u8], sig: &Vec<u8>) -> std::result::Result<(), SignatureError> {
        let params = &ring_sig::RSA_PKCS1_2048_8192_SHA256;
        let ok = match self.0.kind() {
            DecodingKeyKind::SecretOrDer(der) => {
                ring_sig::UnparsedPublicKey::new(params, der).verify(msg, sig)
            }
            DecodingKeyKind::RsaModulusExponent { n, e } => {
                ring_sig::RsaPublicKeyComponents { n, e }.verify(params, msg, sig)
            }
        };
        ok.map_err(|_| SignatureError::new())
    }
}

impl JwtVerifier for Rs256 {
    fn algorithm(&self) -> Algorithm {
        Algorithm::RS256
    }
}

fn new_verifier(alg: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>> {
    match alg {
        Algorithm::RS256 if key.family() == AlgorithmFamily::Rsa => {
            Ok(Box::new(Rs256(key.clone())))
        }
        Algorithm::RS256 => Err(ErrorKind::InvalidKeyFormat.into()),
        _ => Err(ErrorKind::InvalidAlgorithm.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsupported_algorithms_are_errors_not_panics() {
        install();
        let secret = EncodingKey::from_secret(b"secret");
        for alg in [Algorithm::ES256, Algorithm::ES384, Algorithm::EdDSA] {
            let err = jsonwebtoken::encode(&jsonwebtoken::Header::new(alg), &"{}", &secret);
            assert!(err.is_err(), "{alg:?} signed");
        }
        let public = DecodingKey::from_rsa_raw_components(&[0xc5; 256], &[1, 0, 1]);
        for alg in [
            Algorithm::HS256,
            Algorithm::RS384,
            Algorithm::ES256,
            Algorithm::PS256,
        ] {
            assert!(new_verifier(&alg, &public).is_err(), "{alg:?} verifier");
        }
        let hmac_key = DecodingKey::from_secret(b"secret");
        assert!(new_verifier(&Algorithm::RS256, &hmac_key).is_err());
        // Not an RSA private key.
        let not_rsa = EncodingKey::from_rsa_der(b"not a key");
        assert!(new_signer(&Algorithm::RS256, &not_rsa).is_err());
    }

    #[cfg(feature = "signing")]
    #[test]
    fn hmac_tokens_sign_and_an_rs256_key_refuses_a_bad_signature() {
        install();
        let token = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(Algorithm::HS256),
            &serde_json::json!({"sub": "x"}),
            &EncodingKey::from_secret(b"secret"),
        )
        .expect("HS256 signs");
        assert_eq!(token.split('.').count(), 3);
        let public = DecodingKey::from_rsa_raw_components(&[0xc5; 256], &[1, 0, 1]);
        let verifier = new_verifier(&Algorithm::RS256, &public).expect("an RSA key");
        assert!(verifier.verify(b"message", &vec![0u8; 256]).is_err());
    }
}
