"""The window's actions, menu bar and toolbar, as in the MMC console (File, Action, View, Help)."""

from __future__ import annotations

from PySide6.QtCore import QObject, QSize, Qt
from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import QMainWindow, QMenu, QToolBar

from ui.icons import icon


def _action(parent: QObject, text: str, icon_name: str = "", shortcut: str | QKeySequence.StandardKey = "",
            tip: str = "") -> QAction:
    action = QAction(text, parent)
    if icon_name:
        action.setIcon(icon(icon_name))
    if shortcut:
        action.setShortcut(QKeySequence(shortcut))
        action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
    action.setStatusTip(tip or text.replace("&", "").rstrip("…"))
    return action


class Actions:
    def __init__(self, window: QMainWindow) -> None:
        a = window
        self.connect = _action(a, "&Connect to Computer…", "computer",
                               tip="Administer the SMTP service of another computer")
        self.remove_computer = _action(a, "Re&move Computer", tip="Stop administering this computer from here")
        self.trust_certificate = _action(a, "&Trust New Certificate…",
                                         tip="Check the new certificate's fingerprint, trust it, and connect again")
        self.new_window = _action(a, "New &Window from Here",
                                  tip="Open a window whose console tree starts at the selected node")
        self.replicate = _action(a, "&Replicate Configuration…",
                                 tip="Copy the settings that are not specific to this computer to other servers")
        self.export = _action(a, "&Export List…", "export", tip="Save the list in the right pane as a CSV file")
        self.put_pickup = _action(a, "&Put Files into Pickup…", "pickup", QKeySequence.StandardKey.Open,
                                  tip="Choose message files to put into the Pickup directory")
        self.paste_pickup = _action(a, "P&aste into Pickup", shortcut=QKeySequence.StandardKey.Paste,
                                    tip="Put the copied files, or the copied message text, into the Pickup directory")
        self.exit = _action(a, "E&xit", shortcut=QKeySequence.StandardKey.Quit)
        self.back = _action(a, "&Back", "back", "Alt+Left")
        self.forward = _action(a, "&Forward", "forward", "Alt+Right")
        self.up = _action(a, "&Up One Level", "up", "Alt+Up")
        self.show_tree = _action(a, "Show/Hide Console &Tree", "tree")
        self.show_tree.setIconVisibleInMenu(False)  # a checkable item: the menu shows its ✓, not a faint frame
        self.show_tree.setCheckable(True)
        self.show_tree.setChecked(True)
        self.start = _action(a, "&Start", "start", tip="Start the virtual server")
        self.stop = _action(a, "S&top", "stop", tip="Stop the virtual server: all sessions are closed")
        self.pause = _action(a, "&Pause", "pause",
                             tip="Pause: refuse new connections, keep the current ones; again to continue")
        self.pause.setCheckable(True)
        self.new_domain = _action(a, "&Domain…", "new-domain", tip="Add a remote or alias domain")
        self.set_default = _action(a, "Set as &Default", tip="Make this alias the default domain")
        self.delete = _action(a, "&Delete", "delete", QKeySequence.StandardKey.Delete)
        self.rename = _action(a, "Re&name", shortcut="F2")
        self.terminate = _action(a, "&Terminate", "terminate", tip="Close the selected sessions")
        self.terminate_all = _action(a, "Terminate &All", tip="Close every session")
        self.refresh = _action(a, "Re&fresh", "refresh", "F5")
        self.properties = _action(a, "P&roperties", "properties", "Alt+Return")
        self.properties.setShortcuts([QKeySequence("Alt+Return"), QKeySequence("Alt+Enter")])  # the keypad's too
        self.properties.setText("P&roperties\tAlt+Enter")  # a menu shows what follows the tab: Windows' word, not Qt's
        self.properties.setToolTip("Properties (Alt+Enter)")
        self.about = _action(a, "&About smtpsvc")
        self.help = _action(a, "&Help Topics", "help", QKeySequence.StandardKey.HelpContents,
                            tip="Help for the selected node (F1)")
        self.track = _action(a, "Trac&k Message…", shortcut="Ctrl+T",
                             tip="Find messages by sender, recipient, Message-ID or time, and what became of them")
        # messages: Queue, Drop, Badmail
        self.retry_now = _action(a, "&Retry Now", "retry", "Ctrl+R", tip="Try to deliver the selected messages now")
        self.retry_domain = _action(a, "Retry D&omain Now…", tip="Try every message for one domain now")
        self.retry_all = _action(a, "Retry A&ll Now", "retry", tip="Try every queued message now (frozen and "
                                 "ETRN-held ones stay held)")
        self.release_etrn = _action(a, "Re&lease for ETRN", "start", tip="Deliver the mail the selected messages' "
                                    "domains hold for ETRN now, as an ETRN from them would")
        self.freeze = _action(a, "&Freeze", "freeze", "Ctrl+H", tip="Hold the selected messages: no delivery "
                              "attempt until they are thawed")
        self.thaw = _action(a, "T&haw", "thaw", "Ctrl+Shift+H", tip="Release the selected frozen messages")
        self.bounce_now = _action(a, "&Bounce Now", "bounce", "Ctrl+B", tip="Return the selected messages to their "
                                  "senders now, with a non-delivery report")
        self.view_message = _action(a, "&View Message", "view", "F3", tip="Show the message: text, HTML (remote "
                                    "content blocked), headers, source, attachments")
        self.save_as = _action(a, "&Save As .eml…", "save", QKeySequence.StandardKey.Save,
                               tip="Save the selected messages as .eml files")
        self.details = _action(a, "&Details", "properties", tip="Envelope, recipients, schedule ahead and transcript")
        self.resend = _action(a, "Re&send", "resend", tip="Put the selected Badmail items back into Pickup")
        self.open_folder = _action(a, "&Open Folder", "folder", tip="Open this directory in the file manager")
        self.columns = _action(a, "Add/Remove &Columns…", tip="Choose the columns of the list in the right pane")
        self.show_chart = _action(a, "Queue &Shape Chart", "chart", tip="Show or hide the queue-shape chart")
        self.show_chart.setIconVisibleInMenu(False)
        self.show_chart.setCheckable(True)
        self.show_chart.setChecked(True)
        self.show_preview = _action(a, "Pre&view Pane", shortcut="Ctrl+Shift+P",
                                    tip="Show the selected message's envelope, state, last error and header "
                                    "beside the Queue list")
        self.show_preview.setCheckable(True)
        self.tray_notices = _action(a, "Tray &Notices", tip="Tell about new Badmail and returned mail with a "
                                    "notification from the system tray")
        self.tray_notices.setCheckable(True)
        self.pickup_preview = _action(a, "&Preview Files Dropped into Pickup",
                                      tip="Show what dropped files will become before they go into Pickup")
        self.pickup_preview.setCheckable(True)
        self.pickup_preview.setChecked(True)
        self.view_modes = QActionGroup(a)
        self.view_mode: dict[str, QAction] = {}
        for mode, text in (("large", "Lar&ge Icons"), ("small", "S&mall Icons"), ("list", "&List"),
                           ("detail", "&Detail")):
            action = _action(a, text)
            action.setCheckable(True)
            action.setData(mode)
            self.view_modes.addAction(action)
            self.view_mode[mode] = action
        self.view_mode["detail"].setChecked(True)
        self.show_toolbar = _action(a, "&Toolbar")
        self.show_toolbar.setCheckable(True)
        self.show_toolbar.setChecked(True)
        self.show_description = _action(a, "&Description Bar", tip="Show the selected node's name over the list")
        self.show_description.setCheckable(True)
        self.show_description.setChecked(True)
        self.customize = _action(a, "Customi&ze…", tip="Show or hide the console tree, description bar, status bar "
                                 "and toolbar")
        self.show_statusbar = _action(a, "Status &Bar")
        self.show_statusbar.setCheckable(True)
        self.show_statusbar.setChecked(True)

    def build_menus(self, window: QMainWindow) -> QMenu:
        """Fill the menu bar; returns the Action menu (rebuilt for the selected node)."""
        bar = window.menuBar()
        file_menu = bar.addMenu("&File")
        file_menu.addActions([self.connect, self.remove_computer, self.export])
        file_menu.addSeparator()
        file_menu.addActions([self.put_pickup, self.paste_pickup])
        file_menu.addSeparator()
        file_menu.addAction(self.exit)
        action_menu = bar.addMenu("&Action")
        view_menu = bar.addMenu("&View")
        view_menu.addActions(self.view_modes.actions())
        view_menu.addSeparator()
        view_menu.addActions([self.show_tree, self.show_description, self.show_toolbar, self.show_statusbar])
        view_menu.addAction(self.customize)
        view_menu.addSeparator()
        view_menu.addAction(self.columns)
        view_menu.addSeparator()
        view_menu.addActions([self.show_chart, self.show_preview, self.pickup_preview, self.tray_notices])
        view_menu.addSeparator()
        view_menu.addAction(self.refresh)
        window_menu = bar.addMenu("&Window")
        window_menu.addAction(self.new_window)
        help_menu = bar.addMenu("&Help")
        help_menu.addAction(self.help)
        help_menu.addSeparator()
        help_menu.addAction(self.about)
        return action_menu

    def build_toolbar(self, window: QMainWindow) -> QToolBar:
        toolbar = QToolBar("Standard", window)
        toolbar.setObjectName("toolbar")
        toolbar.setIconSize(QSize(16, 16))
        toolbar.setMovable(False)
        toolbar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonIconOnly)
        toolbar.addActions([self.back, self.forward, self.up, self.show_tree])
        toolbar.addSeparator()
        toolbar.addActions([self.properties, self.refresh, self.export])
        toolbar.addSeparator()
        toolbar.addActions([self.start, self.stop, self.pause])
        window.addToolBar(toolbar)
        return toolbar

    def build_message_toolbar(self, window: QMainWindow) -> QToolBar:
        """The message actions (Queue, Drop, Badmail); shown only on those nodes."""
        toolbar = QToolBar("Messages", window)
        toolbar.setObjectName("messageToolbar")
        toolbar.setIconSize(QSize(16, 16))
        toolbar.setMovable(False)
        toolbar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonIconOnly)
        toolbar.addActions([self.retry_now, self.freeze, self.thaw, self.bounce_now])
        toolbar.addSeparator()
        toolbar.addActions([self.view_message, self.save_as, self.resend, self.delete, self.open_folder])
        window.addToolBar(toolbar)
        return toolbar
