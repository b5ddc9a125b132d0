import base64
import hashlib
import hmac
import time


def main(user_id: str, secret: str) -> dict:
    # <id>.<expiry>.<base64url HMAC-SHA256(secret, "<id>.<expiry>")>, as RELAY_USER_SECRET expects.
    expiry = int(time.time()) + 600
    payload = f"{user_id}.{expiry}"
    digest = hmac.new(secret.encode("utf-8"), payload.encode("utf-8"), hashlib.sha256).digest()
    signature = base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
    return {"signed_user_id": f"{payload}.{signature}"}
