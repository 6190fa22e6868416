// libxcrypt's crypt_rn (bcrypt: $2a$, $2b$, $2y$) and OpenSSL libcrypto's one-shot SHA256.
#include <crypt.h>
#include <openssl/sha.h>
