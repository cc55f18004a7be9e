// Chinese and English texts of the party page. The language is remembered per phone.
(function () {
  const T = {
    zh: {
      welcome: "欢迎参加在线调解", joining_as: "您将以此身份加入：",
      camera_hint: "加入时需要使用摄像头和麦克风。请在浏览器询问时选择“允许”。",
      join: "加入", connecting: "正在连接…", connected: "已连接",
      reconnecting: "网络中断，正在重新连接…", waiting_title: "请稍候",
      waiting_text: "调解员会尽快请您进入调解室。请不要关闭此页面。",
      participants: "参加人员", mute: "静音", unmute: "取消静音", camera_off: "关闭摄像头",
      camera_on: "打开摄像头", audio_only: "仅语音", video_on: "恢复视频", leave: "离开",
      admit: "准许进入", to_waiting: "请回等候室", in_waiting: "等候中", offline: "未连接",
      joint: "调解室", waiting: "等候室", caucus: "单独会谈室", left_title: "您已离开",
      left_text: "您可以关闭此页面。", removed_title: "调解员已请您离开本次调解", ended_title: "调解已结束", no_devices:
      "无法使用摄像头或麦克风，请检查浏览器权限后重试。", audio_only_hint:
      "网络较差，建议切换为仅语音。", replaced: "您已在另一个窗口加入。",
      error: "出错了：", you: "（您）", this_is_me: "是我，继续", not_me:
      "如果这不是您，请不要继续，并联系调解员。", consent_title: "参加前请确认",
      agree: "同意并继续", check_title: "检查摄像头和麦克风", network_ok: "网络：已连接服务器",
      consent_online_mediation: "我同意通过视频方式在线参加本次调解。",
      consent_session_rules: "我会遵守调解规则：自行确保环境私密，不私自录音录像，不向他人转播。",
      consent_recording: "我同意对联合调解过程录音录像（可不同意）。",
      chat: "文字消息", send: "发送", ask_mediator: "请调解员过来", asked: "已通知调解员",
      id_checked: "已核验身份", remove: "移出", confirm_remove: "确定移出：", visit: "进入",
      side: "方", close_caucus: "结束单独会谈", start_recording: "开始录制", stop_recording: "停止录制",
      confirm_end: "确定结束本次调解吗？", time_left: "剩余时间", new_caucus: "新建单独会谈室",
      caucus_rooms: "单独会谈室", return_joint: "回到调解室", call_lawyer: "呼叫值班律师",
      lawyer_name: "律师姓名", end_session: "结束调解", share_document: "分享文件（PDF/图片）",
      open_document: "打开", uploading: "正在上传…",
      roles: { mediator: "调解员", co_mediator: "协同调解员", party: "当事人", counsel: "代理律师",
        support: "陪同人员", interpreter: "翻译", duty_lawyer: "值班律师", observer: "观察员" },
    },
    en: {
      welcome: "Welcome to the online mediation", joining_as: "You are joining as",
      camera_hint: "Joining uses your camera and microphone. Choose \u201cAllow\u201d when the browser asks.",
      join: "Join", connecting: "Connecting\u2026", connected: "Connected",
      reconnecting: "Network lost, reconnecting\u2026", waiting_title: "Please wait",
      waiting_text: "The mediator will let you into the meeting soon. Keep this page open.",
      participants: "Participants", mute: "Mute", unmute: "Unmute", camera_off: "Camera off",
      camera_on: "Camera on", audio_only: "Audio only", video_on: "Video on", leave: "Leave",
      admit: "Admit", to_waiting: "To waiting room", in_waiting: "waiting", offline: "offline",
      joint: "Joint session", waiting: "Waiting room", caucus: "Private room",
      left_title: "You have left", left_text: "You can close this page.",
      removed_title: "The mediator has removed you from this session",
      ended_title: "The mediation has ended", no_devices:
      "The camera or microphone cannot be used. Check the browser's permissions and try again.",
      audio_only_hint: "Your connection is weak; audio only is recommended.",
      replaced: "You joined from another window.", error: "Error: ", you: " (you)",
      this_is_me: "Yes, this is me", not_me: "If this is not you, do not continue; contact the mediator.",
      consent_title: "Before you join", agree: "Agree and continue",
      check_title: "Check your camera and microphone", network_ok: "Network: connected to the server",
      consent_online_mediation: "I agree to take part in this mediation online, by video.",
      consent_session_rules: "I will follow the session rules: I keep my surroundings private, I do not record, and I do not broadcast the session to anyone.",
      consent_recording: "I agree that the joint sessions are recorded (optional).",
      chat: "Messages", send: "Send", ask_mediator: "Ask for the mediator", asked: "The mediator has been told",
      id_checked: "ID checked", remove: "Remove", confirm_remove: "Remove", visit: "Visit",
      side: "Side", close_caucus: "Close", start_recording: "Start recording",
      stop_recording: "Stop recording", confirm_end: "End this mediation session?",
      time_left: "Time left", new_caucus: "New private room", caucus_rooms: "Private rooms",
      return_joint: "Back to the joint session", call_lawyer: "Call a duty lawyer",
      lawyer_name: "Lawyer's name", end_session: "End the session",
      share_document: "Share a document (PDF/image)", open_document: "Open", uploading: "Uploading\u2026",
      roles: { mediator: "Mediator", co_mediator: "Co-mediator", party: "Party", counsel: "Counsel",
        support: "Support person", interpreter: "Interpreter", duty_lawyer: "Duty lawyer",
        observer: "Observer" },
    },
  };
  let lang = localStorage.getItem("parley.lang") ||
    ((navigator.language || "zh").toLowerCase().startsWith("zh") ? "zh" : "en");
  window.i18n = {
    get lang() { return lang; },
    t(key) { return (T[lang] && T[lang][key]) || T.en[key] || key; },
    role(r) { return (T[lang].roles[r]) || r; },
    space(s) {
      if (!s) return "";
      if (s.startsWith("caucus:")) return this.t("caucus") + " " + s.slice(7);
      return this.t(s);
    },
    apply(root = document) {
      document.documentElement.lang = lang;
      root.querySelectorAll("[data-t]").forEach((el) => { el.textContent = this.t(el.dataset.t); });
      root.querySelectorAll("[data-t-placeholder]").forEach((el) => { el.placeholder = this.t(el.dataset.tPlaceholder); });
      const btn = document.getElementById("lang");
      if (btn) btn.textContent = lang === "zh" ? "English" : "中文";
    },
    toggle() { lang = lang === "zh" ? "en" : "zh"; localStorage.setItem("parley.lang", lang); this.apply(); },
  };
})();
