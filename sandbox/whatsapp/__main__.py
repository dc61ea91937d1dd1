"""``python -m sandbox.whatsapp --port 8081``: the WhatsApp emulator on its own."""

from sandbox.whatsapp.emulator import main

main()
