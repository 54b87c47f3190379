async def test_register_login_me(client, sign_up):
    account = await sign_up("ada_l")
    response = await client.get("/api/v1/users/me", headers=account.headers)
    assert response.status_code == 200
    assert response.json()["username"] == "ada_l"
